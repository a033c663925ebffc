"""Data: COCO-format instance data sets of any origin (augmentations, batching) and, in
`synthetic/`, the generator of ambiguous tote scenes that writes them. Imports no other
subpackage.
"""
