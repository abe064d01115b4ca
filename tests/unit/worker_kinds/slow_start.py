"""A task module that takes a second to import (as one that loads a model or a big table might)."""

import time

time.sleep(1.0)
