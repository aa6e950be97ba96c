"""The one exception type users catch, named as in PuzzleLib."""


class ModuleError(Exception):
    """Bad input to a module or functional op: the message names the parameter, the value and what was expected."""


class KernelBuildError(ModuleError):
    """An OpenCL program failed to build; carries everything needed to reproduce the failure."""

    def __init__(self, key_name, device, options, log, source_path):
        self.key_name, self.device, self.options, self.log, self.source_path = key_name, device, options, log, source_path
        super().__init__(
            f"Kernel {key_name} failed to build on {device} with options {options!r}; "
            f"source saved at {source_path}\n--- build log ---\n{log}"
        )


class ScratchTooLarge(ModuleError):
    """A call's scratch buffer (not an array the caller gave or gets back) is over the device's allocation limit
    or the scratch budget; the functional layer then splits the call along the batch."""
