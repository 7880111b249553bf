"""Active learning backend: scores unlabeled tasks and reorders Label Studio's queue.

This step provides the acquisition strategies (``strategies``) and the loss-prediction head
(``loss_prediction``); the server, task models and queue writing come next.
"""
