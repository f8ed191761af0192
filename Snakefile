# mrbench: a reproducible benchmark for unsupervised MRI contrast translation (T1w <-> T2w, and
# any other pair of T1w, T1ce, T2w, PDw and FLAIR a dataset offers: datasets.<name>.pairs).
#
#   snakemake --cores 8 --resources gpu=2                      # the paper setup (config/config.yaml)
#   snakemake --cores 8 --resources gpu=2 --configfile config/pairs.yaml   # SynDiff's pairs
#   snakemake --cores 2 --configfile config/demo.yaml          # the CPU demo on the phantom dataset
#
# Rules live in workflow/rules/*.smk; they call the `mrbench` command line, never inline logic.

from snakemake.utils import min_version, validate

min_version("9.0")


# The paper setup unless a config is given with --configfile (a directive here would be merged
# with the command-line config, mixing the paper's datasets into the demo).
if not config:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/ixi.smk"
include: "workflow/rules/brats.smk"
include: "workflow/rules/msd.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
