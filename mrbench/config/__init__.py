"""Config stage (workflow/rules/common.smk, at parse time): checks and resolution of the config,
the schema as the one home of every default, training recipes, evaluation settings, the roster of
methods, cluster resources, plugins and the facts cache.
"""
