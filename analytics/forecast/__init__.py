"""Online forecasts of request rates and predictive scaling advice (issue 4).

``model.Forecaster`` learns one fixed-step point at a time (robust damped Holt with a daily
profile); ``advisor.ScalingAdvisor`` turns forecasts into replica counts; ``hpa`` simulates
the Kubernetes HPA and ``sim`` replays a series through both; ``command`` holds the CLIs.
"""
