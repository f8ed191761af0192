"""Evaluation stage (workflow/rules/evaluate.smk): metric protocols (the compiled kernel and the
scikit-image reference), scoring of translated test sets, FID/KID, statistics, content maps.
"""
