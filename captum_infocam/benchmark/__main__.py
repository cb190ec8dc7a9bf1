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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m captum_infocam.benchmark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=summary))
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
