"""Tables for the README, generated from the code so the documentation cannot drift from it."""
from __future__ import annotations

from sslcore.methods import METHODS


def methods_table() -> str:
    lines = ["| method | setting | default | what it does |", "|---|---|---|---|"]
    for name, method in METHODS.items():
        for index, param in enumerate(method.Params.describe()):
            label = f"`{name}`" if index == 0 else ""
            lines.append(f"| {label} | `{param['name']}` | `{param['default']}` | {param['help']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(methods_table())
