"""The base layer, under everything else: errors, files, progress. Imports no other part of interp."""
