"""Markdown tables for the benchmark scripts (pandas' to_markdown needs tabulate, which interp does not install)."""

import pandas as pd


def markdown(df: pd.DataFrame, index: bool = False, float_format: str = "{:.3g}") -> str:
    """df as a Markdown table; strings with edge whitespace are shown quoted, | and newlines escaped."""
    df = df.reset_index() if index else df

    def cell(v) -> str:
        if isinstance(v, float):
            return float_format.format(v)
        text = repr(v) if isinstance(v, str) and v != v.strip() else str(v)
        return text.replace("|", "\\|").replace("\n", "\\n")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def show(title: str, table: pd.DataFrame) -> None:
    """A titled Markdown table on stdout, flushed (long benchmarks print as they go)."""
    print(f"\n### {title}\n\n" + markdown(table), flush=True)
