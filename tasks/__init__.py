"""The papers' tasks, each a module that declares a `Task` subclass (tinyprop.tasks.training), and the one
run of them all (tinyprop.tasks.run). A new task is one module and one entry in TASKS."""
import importlib

TASKS = {"mnist": "MnistTask", "parse": "ParseTask", "pos": "TaggerTask"}  # module name -> its Task class


def task_class(name, where=""):
    """The Task subclass of task `name`; `where` prefixes the message of an unknown name (a file's path)."""
    from tinyprop.tasks.files import DataError
    if not isinstance(name, str) or name not in TASKS:
        raise DataError(f"{where}task {name!r} is not one of tinyprop's tasks ({', '.join(TASKS)})")
    return getattr(importlib.import_module(f"tinyprop.tasks.{name}"), TASKS[name])

