"""Named interpreter-version flags, so version checks read as what they mean."""

import sys

#: 3.12 brought ``sys.monitoring`` (PEP 669): the recorder hooks it instead of PyEval_SetProfile.
HAS_SYS_MONITORING = sys.version_info >= (3, 12)
#: ``co_qualname`` exists from 3.11 on; before, names are found by walking the module.
HAS_CO_QUALNAME = sys.version_info >= (3, 11)
IS_LINUX = sys.platform.startswith("linux")
IS_MACOS = sys.platform == "darwin"
