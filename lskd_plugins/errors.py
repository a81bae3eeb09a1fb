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


def run_script(main) -> None:
    """``if __name__ == "__main__": run_script(main)``: exit with main()'s code, or 2 and the
    one-line message of an LskdError (the ``lskd`` command's convention, for stand-alone scripts)."""
    import sys

    try:
        code = main()
    except LskdError as err:
        print(str(err), file=sys.stderr)
        code = 2
    sys.exit(code)
