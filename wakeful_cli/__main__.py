from wakeful_cli.cli import main

raise SystemExit(main())
