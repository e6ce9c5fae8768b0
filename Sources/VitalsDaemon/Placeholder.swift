enum _PlaceholderVitalsDaemon {}
