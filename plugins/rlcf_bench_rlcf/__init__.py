"""The RLCF method family (prompt tuning, image-encoder tuning, retrieval, captioning).

Methods, one module each: ``rlcf_prompt`` (prompt tuning), ``rlcf_image`` (image-encoder tuning and
its momentum variant) and ``rlcf`` (retrieval and captioning, built on the private ``_retrieval`` and
``_captioning``). Besides them, ``reward_models`` (the paper's named reward models),
``paper_suites`` (the paper tables as suites) and ``paper_numbers`` (the paper's reported numbers). Each module that defines a hook registers itself; no
list to edit here.
"""
