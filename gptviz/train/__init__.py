"""The training layer: the corpus (:mod:`~gptviz.train.data`), the stages that reproduce the
bundled model (:mod:`~gptviz.train.stages`) and held-out evaluation
(:mod:`~gptviz.train.evaluate`)."""
