"""The Python client of `lever serve`: report an agent run's steps and obey its decisions.

```python
from lever_client import Lever, Price, RunStopped

lever = Lever("http://127.0.0.1:8080", prices={"gpt-4o": Price("2.50", "10.00")})
with lever.start_run(tenant="acme", agent="support-bot") as run:
    response = openai.chat.completions.create(...)
    run.step(usage=response.usage, model="gpt-4o")   # raises RunStopped at the budget
```
"""

from ._async import AsyncLever, AsyncRun
from ._client import Lever, Run
from ._model import Alert, Decision, OverrideStatus, Signal
from ._wire import Retry
from .errors import (
    LeverError,
    RunHalted,
    RunKilled,
    RunPaused,
    RunStopped,
    StepRejected,
)
from .usage import Price, tokens

__all__ = [
    "Alert",
    "AsyncLever",
    "AsyncRun",
    "Decision",
    "Lever",
    "LeverError",
    "OverrideStatus",
    "Price",
    "Retry",
    "Run",
    "RunHalted",
    "RunKilled",
    "RunPaused",
    "RunStopped",
    "Signal",
    "StepRejected",
    "tokens",
]
