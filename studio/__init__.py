"""The application shell: settings, database engine, CLI (and later the web app)."""
