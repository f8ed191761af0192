"""Training stage (workflow/rules/train.smk): the shared trainer (:mod:`.loop`) and its parts -
settings, runs, sampling, schedules, validation, selection, checkpoints, logs - plus speed
switches, data-parallel training and GPU slots.
"""
