"""``python -m inferq_cli``: the ``inferq`` command."""

import sys

from inferq_cli.main import main

sys.exit(main())
