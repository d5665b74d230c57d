"""`python -m interp ...` is the `interp` command; torchrun needs it: torchrun -m interp scan ..."""

from interp.cli import app

app(prog_name="interp")
