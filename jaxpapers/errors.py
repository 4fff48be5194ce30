"""Errors caused by the user's input, which the command line reports in one line without a traceback."""


class UserError(Exception):
  """Base class: a bad config, missing data, an unusable checkpoint, a diverged run."""


class ConfigError(UserError, ValueError):
  """A config key or value that the experiment cannot run with."""


class DatasetNotFoundError(UserError, FileNotFoundError):
  """The dataset is not prepared in the data directory."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint exists but cannot be restored (corrupt, or saved by a different configuration)."""


class NonFiniteLossError(UserError, FloatingPointError):
  """The training loss became NaN or Inf."""
