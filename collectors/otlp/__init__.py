"""OTLP receivers (gRPC and HTTP) that store each export request durably as it came."""
