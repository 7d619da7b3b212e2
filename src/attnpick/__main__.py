from attnpick.cli.main import main

raise SystemExit(main())
