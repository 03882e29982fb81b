"""Attribution: every dbt model as an asset, its checks, the won-deals sensor, the build jobs."""
