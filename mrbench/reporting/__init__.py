"""Reporting stage (workflow/rules/report.smk): the table engine and every table (Table 1, Table 2,
the paper comparison, significance, efficiency, fidelity, methods, recipes) and the figures.
"""
