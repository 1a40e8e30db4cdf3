from wsinspect.cli import main

raise SystemExit(main())
