"""Bringing a model: the encoding it is trained on (`warden_encoder`, `warden model encoder`), a
first version trained from a labelled set (`warden model init`), and the checks that make a
wrong factory, kwargs, weights, broker or database fail at once with one line (`startup`).

For training scripts::

    from watcher.onboarding import warden_encoder

    encoding = warden_encoder("warden.toml", "credit")   # what the daemon will use
    X, y = encoding.transform(frame), encoding.targets(frame)
"""

from watcher.onboarding.encoder import warden_encoder

__all__ = ["warden_encoder"]
