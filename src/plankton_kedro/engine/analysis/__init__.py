"""Model outputs -> numbers and figures. numpy, scikit-learn and matplotlib only, no torch.

Classification metrics and the confusion matrix (:mod:`.metrics`), calibration and the
"unknown" threshold (:mod:`.calibration`), the evaluation report of a fine-tuned model
(:mod:`.report`), the paper's frozen-feature classifiers (:mod:`.features`) and ensemble
member selection and combination (:mod:`.ensemble`).
"""
