"""listen-to-interpret: pure-torch core (front-end, backbones, NMF, interpretation math, metrics).

Nothing in this package imports Lightning, so it can be used on its own. The front door::

    from l2i import load_interpreter

    interpreter = load_interpreter("interpreter.ckpt")  # a post-hoc interpreter or a by-design model
    clip = interpreter.explain("recording.wav")         # see l2i.trained
"""

__version__ = "0.1.0"

__all__ = ["load_interpreter", "TrainedInterpreter", "ClipInterpretation", "Timeline", "export_interpreter"]


def __getattr__(name: str):
    # imported on first use, so `import l2i` stays light
    if name in ("load_interpreter", "TrainedInterpreter", "ClipInterpretation", "Timeline"):
        from l2i import trained

        return getattr(trained, name)
    if name == "export_interpreter":
        from l2i.bundle import export_interpreter

        return export_interpreter
    raise AttributeError(f"module 'l2i' has no attribute {name!r}")
