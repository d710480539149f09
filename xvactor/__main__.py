from xvactor.cli import main

raise SystemExit(main())
