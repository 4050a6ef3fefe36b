"""On-disk dataset formats, one module each: CIFAR-10/100 pickles, SVHN .mat, IDX (MNIST, Fashion-MNIST), image folders.

Lives here: readers of an official file layout, each registered with ``@register_dataset``.
Never here: downloading (``nrflab.data.download``), datasets generated in code (``planted``, ``embedded``).
To add one: a module here with a loader decorated ``@register_dataset("name")``, imported below.
Every loader turns any missing or corrupt file into a one-line ``NrflabError`` that names the file.
"""

# importing each format module registers its loaders; nothing here is a name to import
from nrflab.data.formats import cifar, idx, imagefolder, svhn  # noqa: F401
