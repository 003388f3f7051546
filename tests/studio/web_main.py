"""The web studio as the NiceGUI `user` fixture runs it: the data folder comes from
`STUDIO_TEST_DATA_DIR`, set by the test that seeded it."""

import os
from pathlib import Path

from nicegui import ui

from studio.app import create_app
from studio.settings import Settings

create_app(Settings(data_dir=Path(os.environ["STUDIO_TEST_DATA_DIR"])))
ui.run(storage_secret="test secret", reload=False)
