"""How should inferq carry float32 tensors? A study of encoded size, encode and decode time.

Run ``python -m serialization_type_test``; see README.md in this folder for the results and
the conclusion. Every format starts from the same numpy array and must decode back to an equal
float32 array, so the timings include the numpy conversions each format forces on its user.
"""
