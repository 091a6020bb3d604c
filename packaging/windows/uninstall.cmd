@echo off
rem Removes the sitewatch site agent: its scheduled tasks, its firewall rules and C:\Program Files\sitewatch.
rem The settings and logs in C:\ProgramData\sitewatch stay; to remove them too:  uninstall.cmd -Purge
rem Other parameters of install.ps1 pass through, e.g.  uninstall.cmd -InstallDir D:\sitewatch
rem
rem The install copies this file and install.ps1 into C:\Program Files\sitewatch, so the agent can be
rem removed without the bundle. When it runs from there, that folder is deleted while this file runs:
rem so the window first leaves the folder, and everything from the PowerShell call on is one
rem parenthesized block, which cmd.exe reads whole before running it. This file is plain ASCII.

setlocal EnableExtensions DisableDelayedExpansion
set "POWERSHELL=%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe"
if exist "%SystemRoot%\Sysnative\WindowsPowerShell\v1.0\powershell.exe" set "POWERSHELL=%SystemRoot%\Sysnative\WindowsPowerShell\v1.0\powershell.exe"
set "SCRIPT=%~dp0install.ps1"
call :detect_double_click "%~nx0"
cd /d "%SystemRoot%"
(
    "%POWERSHELL%" -NoProfile -ExecutionPolicy Bypass -File "%SCRIPT%" -Uninstall %*
    if errorlevel 1 (
        if defined PAUSE_AT_END pause
        exit /b 1
    )
    if defined PAUSE_AT_END pause
    exit /b 0
)

:detect_double_click
rem Explorer starts a .cmd file as  cmd.exe /c ""C:\...\uninstall.cmd" " : the file's own name is in
rem CMDCMDLINE then, while in a console window someone typed it in, CMDCMDLINE is that console's.
set "PAUSE_AT_END="
if defined SITEWATCH_NO_PAUSE exit /b 0
setlocal EnableDelayedExpansion
set "LAUNCH=!CMDCMDLINE!"
set "WITHOUT_NAME=!LAUNCH:%~1=!"
if /i "!WITHOUT_NAME!"=="!LAUNCH!" (endlocal & exit /b 0)
endlocal & set "PAUSE_AT_END=1"
exit /b 0
