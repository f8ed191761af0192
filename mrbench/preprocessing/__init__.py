"""Preprocessing stage (workflow/rules/ixi.smk): the per-subject pipeline of raw T1w/T2w pairs -
orientation, skull-stripping, registration, tissue classes, QC - and its building blocks.
"""
