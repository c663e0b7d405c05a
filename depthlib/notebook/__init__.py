"""What the numbered notebooks call, the top layer: one function per notebook step (workbook.py), the interactive
explorer (widgets.py), and the pipeline that runs the notebooks in order with papermill (pipeline.py, with its
kernel manager in pipeline_kernel.py; `depthlib pipeline`). Notebooks import the modules:
`from depthlib.notebook import workbook`. Nothing is re-exported: workbook imports every stage below it.
"""
