from mdtp.node.cli import main

raise SystemExit(main())
