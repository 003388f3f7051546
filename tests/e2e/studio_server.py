"""The real `studio serve` command on the port the e2e harness chose (`E2E_PORT`); the data
folder comes from `STUDIO_DATA_DIR`, as for any user."""

import os
import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", "--host", "127.0.0.1", "--port", os.environ["E2E_PORT"]]))
