"""``python -m captum_infocam.benchmark {run,depth,sanity,train,sweep,meta}``.

* ``run`` (what ``make demo`` calls): compares InfoCAM with the classic CAMs on
  every metric, prints a markdown table and writes per-image results and a
  figure. Under ``torchrun`` the images are split across processes.
* ``depth``: every method at every stage of a network, beside how shattered the
  gradients are there.
* ``sanity``: the model-randomisation check.
* ``train``: retrains a shipped network reproducibly.
* ``sweep``: the sweep of InfoCAM's settings that chose its defaults.
* ``meta``: the meta-evaluation of the confidence metrics (``docs/metrics.md``).
"""

from __future__ import annotations

import argparse

from captum_infocam.benchmark import depth, meta, run, sanity, sweep, train

#: The commands: name, the module that owns its arguments and handler (``add_arguments``),
#: and a one-line help. This module only assembles them.
COMMANDS = {
    "run": (run, "compare the methods on every metric"),
    "depth": (depth, "every method at every stage, beside the gradients' shattering"),
    "sanity": (sanity, "model-randomisation check"),
    "train": (train, "retrain a shipped network"),
    "sweep": (sweep, "the sweep of InfoCAM's settings that chose its defaults"),
    "meta": (meta, "meta-evaluation of the classic and improved confidence metrics"),
}


#: What ``--help`` says before the commands.
DESCRIPTION = (
    "InfoCAM's benchmark on the shapes data set (objects with exact masks) and the shipped "
    "networks, or on your own ImageFolder with boxes. 'run' is what make demo calls."
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m captum_infocam.benchmark", description=DESCRIPTION
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        command = commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(command)
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
