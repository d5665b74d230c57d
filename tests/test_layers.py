"""The house rule: a layer never imports a higher one (imports inside functions count too), so
there is no import cycle between layers. Read from the source with ast: nothing is imported."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"interp": "interp", "analyses": "interp.analyses", "kernels": "interp.kernels", "apps": "interp.apps"}
# bottom up; a module belongs to the first prefix it starts with (longest prefixes first below)
LAYERS = ["interp.base", "interp.kernels", "interp.runtime", "interp.data", "interp.organisms", "interp.analyses",
          "interp.run", "interp"]  # the last: the front doors (cli, report, apps, the package's lazy exports)
FRONT = {"interp.apps": "interp"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for file in (ROOT / folder).rglob("*.py"):
            parts = [p for p in file.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = file
    return found


def layer(module: str) -> int:
    for prefix, same in FRONT.items():
        if module == prefix or module.startswith(prefix + "."):
            module = same
    for rank in sorted(range(len(LAYERS)), key=lambda r: -len(LAYERS[r])):
        if module == LAYERS[rank] or module.startswith(LAYERS[rank] + "."):
            return rank
    raise AssertionError(f"{module} is in no layer")


def imports(module: str, file: Path):
    """(line, imported interp module) for every import statement, at any depth, TYPE_CHECKING blocks aside."""
    is_package = file.name == "__init__.py"
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # ast.walk has not entered it yet
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            if name == "interp" or name.startswith("interp."):
                yield node.lineno, name


def test_no_layer_imports_a_higher_one():
    found = modules()
    upward = set()
    for module, file in found.items():
        for line, name in imports(module, file):
            while name not in found and "." in name:  # `from interp.x import function` names the module interp.x
                name = name.rpartition(".")[0]
            if name in found and layer(name) > layer(module) and not module.startswith(name + "."):
                upward.add(f"{file.relative_to(ROOT)}:{line} ({LAYERS[layer(module)]}) imports {name} ({LAYERS[layer(name)]})")
    assert not upward, "imports of a higher layer:\n" + "\n".join(sorted(upward))


def test_every_module_is_in_a_layer():
    assert {layer(m) for m in modules()} == set(range(len(LAYERS)))
