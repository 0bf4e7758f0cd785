{
    "name": "Celery Task",
    "summary": "Run decorated ORM methods in the background on Celery workers",
    "version": "1.0.0",
    "category": "Technical",
    "license": "LGPL-3",
    "author": "celery_task developers",
    "images": ["static/description/dashboard.png", "static/description/tasks.png"],
    "depends": ["bus"],
    "external_dependencies": {"python": ["celery", "kombu", "redis"]},
    "data": [
        "security/celery_task_security.xml",
        "security/ir.model.access.csv",
        "data/ir_config_parameter.xml",
        "data/ir_cron.xml",
        "views/celery_task_views.xml",
        "views/celery_periodic_task_views.xml",
        "views/celery_workflow_views.xml",
        "views/celery_task_limit_views.xml",
        "views/celery_queue_views.xml",
        "views/celery_dashboard_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "celery_task/static/src/**/*",
        ],
        "web.assets_tests": [
            "celery_task/static/tests/tours/**/*",
        ],
    },
    "installable": True,
    "application": True,
}
