"""One config idiom for every entry point: a dataclass whose fields carry their own help.

train.py, eval.py and toy/tree_demo.py each declare one `@dataclass` of options; this module
turns it into an argparse parser (one `--flag` per field, `--help` lists every default) and
back into an instance. Nothing here knows about models or losses.

    @dataclass
    class Config:
        steps: int = option(200, "total optimizer steps")
        resume: bool = option(False, "continue from the newest checkpoint")

    cfg = parse(Config, ["--steps", "3"])        # Config(steps=3, resume=False)

Rules, so that every entry point behaves the same:
- a field `group_size` is the flag `--group-size`; a `bool` field is a switch (`store_true`);
- a field whose default is None takes a string (or the type named in `option(..., type=)`);
- a field may say `choices=(...)`: argparse then refuses anything else with one line;
- argparse's own errors (an unknown flag, `--steps x`) exit with code 2, as our checks do.
"""

import argparse
import dataclasses
import math

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def option(default, help, *, type=None, choices=None, nargs=None):
    """A dataclass field with its --help text (and optionally its argparse type/choices/nargs)."""
    meta = {"help": help, "type": type, "choices": choices, "nargs": nargs}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _field_type(f):
    t = f.type if not isinstance(f.type, str) else _TYPES.get(f.type.split(" ")[0], str)
    return f.metadata.get("type") or (t if t in (int, float, str, bool) else str)


def build_parser(cls, description, epilog=None):
    """An ArgumentParser with one flag per field of the dataclass `cls`."""
    ap = argparse.ArgumentParser(description=description, epilog=epilog,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(cls):
        if not f.init or "help" not in f.metadata:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if kind is bool:
            ap.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            ap.add_argument(flag, type=kind, default=default, help=f.metadata["help"],
                            choices=f.metadata.get("choices"), nargs=f.metadata.get("nargs"))
    return ap


def parse(cls, argv=None, description=None, epilog=None):
    """Parse `argv` (None: sys.argv) into an instance of the dataclass `cls`."""
    ap = build_parser(cls, description or (cls.__doc__ or "").split("\n")[0], epilog)
    return cls(**vars(ap.parse_args(argv)))


def non_finite_floats(cfg):
    """Names of the float fields of `cfg` that hold nan or +-inf (always a mistake in a flag).

    >>> from dataclasses import make_dataclass
    >>> C = make_dataclass("C", [("lr", float, 1.0), ("n", int, 2)])
    >>> non_finite_floats(C(lr=float("inf")))
    ['lr']
    """
    return [f.name for f in dataclasses.fields(cfg)
            if isinstance(getattr(cfg, f.name), float) and not math.isfinite(getattr(cfg, f.name))]
