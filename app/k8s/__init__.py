"""Kubernetes: AdmissionReview models, the images of every pod-bearing kind, JSONPatch pins,
AdmissionReview answers, and the manifests and certificate a cluster needs."""
