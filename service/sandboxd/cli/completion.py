"""``sandboxctl completion bash|zsh``: a shell completion script, generated from the argument parser itself.

The script completes subcommands, ``dlq`` subcommands and each command's flags (so it never drifts from the
parser), offline: it does not complete sandbox ids (that would need a NATS round trip at every Tab). zsh gets
the same function through ``bashcompinit``.
"""

from __future__ import annotations

import argparse
from typing import Final

SHELLS: Final = ("bash", "zsh")
INSTALL: Final = {
    "bash": "source <(sandboxctl completion bash)  # or save to ~/.local/share/bash-completion/completions/sandboxctl",
    "zsh": "source <(sandboxctl completion zsh)   # or save it as _sandboxctl in a directory of your $fpath",
}


def completion_help() -> str:
    return "print a shell completion script; install with:\n  " + "\n  ".join(INSTALL.values())


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        if action.help is not argparse.SUPPRESS or "--verbose" in action.option_strings
        for option in action.option_strings
        if option.startswith("--")
    ]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The script for ``shell`` (``bash`` or ``zsh``)."""
    prog = parser.prog
    commands = _commands(parser)
    cases = [f'        "") words="{" ".join([*commands, *_flags(parser), "--help"])}" ;;']
    nested: list[str] = []
    for name, sub in commands.items():
        inner = _commands(sub)
        if inner:
            nested.append(name)
            cases.append(f'        "{name}") words="{" ".join(inner)}" ;;')
            cases += [f'        "{name} {n}") words="{" ".join(_flags(s))}" ;;' for n, s in inner.items()]
        else:
            positional = [c for a in sub._actions if a.choices and not a.option_strings for c in a.choices]
            cases.append(f'        "{name}") words="{" ".join([*positional, *_flags(sub)])}" ;;')
    function = f"""_{prog}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" command="" word words i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ -z "$command" && " {" ".join(commands)} " == *" $word "* ]]; then
            command="$word"
        elif [[ " {" ".join(nested)} " == *" $command "* && "$command" != *" "* && "$word" != -* ]]; then
            command="$command $word"
        fi
    done
    case "$command" in
{chr(10).join(cases)}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _{prog} {prog}
"""
    if shell == "zsh":
        return f"#compdef {prog}\nautoload -U +X bashcompinit && bashcompinit\n{function}"
    return f"# bash completion for {prog}: {INSTALL['bash']}\n{function}"
