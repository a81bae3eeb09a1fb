"""User-facing errors.

``LskdError`` subclasses ``SystemExit`` on purpose: raised anywhere (our CLI, or inside
``fairseq-train`` through the plugins) it stops the program with its one-line message and no
traceback from deep inside torch or fairseq. Tests catch it with ``pytest.raises(LskdError)``.
"""


class LskdError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"lskd: error: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.code if isinstance(self.code, str) else self.message
