def command():
    """placeholder"""
