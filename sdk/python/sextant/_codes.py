"""The server's error codes the SDK acts on.

Each is a value of the server's ``ErrorCode`` enum (``components.schemas.ErrorCode`` in
``/openapi.json``); ``tests/test_codes.py`` holds every name here to a running
server's document, and holds the SDK to branching on these names only.
"""

API_KEY_REQUIRED = "api_key_required"
ARTIFACT_EXISTS = "artifact_exists"
CONCURRENT_UPDATE = "concurrent_update"
PROJECT_EXISTS = "project_exists"
RUN_ENDED = "run_ended"
