from attnpick.cli import main

raise SystemExit(main())
