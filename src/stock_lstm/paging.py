"""Page sizes of every paged listing (the API's ``/models`` and ``/training/jobs``, the
CLI's ``models``), declared once and without imports: the CLI's parser reads them, and
``stock-lstm --help`` must not import SQLAlchemy."""

#: Rows an API page holds unless asked otherwise, and at most.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: Versions ``stock-lstm models`` prints per page (a terminal's worth).
CLI_PAGE_SIZE = 50
