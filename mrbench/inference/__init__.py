"""Inference stage (workflow/rules/evaluate.smk, rule translate): a trained model applied to test
splits and to a user's own NIfTI volumes.
"""
