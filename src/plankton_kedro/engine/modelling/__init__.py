"""Cache + manifest -> trained networks and their outputs. torch.

The network (:mod:`.model`, :mod:`.weights`), data loading from the uint8 cache (:mod:`.data`),
where and how it computes (:mod:`.runtime`, :mod:`.distributed`), the optimiser and schedule
(:mod:`.schedule`), one epoch and one evaluation (:mod:`.loop`), a whole stage's training with
early stopping and resume (:mod:`.fit`, :mod:`.resume`), stage orchestration from cache to
checkpoint (:mod:`.stages`), and inference on ingested splits (:mod:`.inference`) or on new
images (:mod:`.classify`).
"""
